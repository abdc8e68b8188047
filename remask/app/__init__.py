"""remask.app: the applications built on remask's measurements, beside the CLI.

``remask.analysis`` measures (exact quantities, estimators, traces, plots); it never loads a
model by name nor writes a summary. The applications here do: they take loaded models, run the
measurements, write ``summary.json`` and figures, and format the tables the CLI prints.

- :mod:`remask.app.analyze` — the ``remask analyze`` commands (homogenization, cmi,
  coherence, order);
- :mod:`remask.app.report` — the toy report behind the README's "What the analysis shows"
  (``python -m remask.app.report``);
- :mod:`remask.app.demo` — ``remask demo``: samplers against the exact truth on a Markov chain;
- :mod:`remask.app.files` — output folders and JSON summaries shared by the three.

Models are loaded by ``remask.models.load_model`` (which also opens ``train_toy``
checkpoints); the CLI only parses options and calls these functions.
"""
