"""The playground's user interface pieces: pure Python that app.py wires to Gradio.

- tokens.py    token labels with visible whitespace, the prompt's token chips, the coloured text
- chart.py     the data the browser's chart is drawn from, and the server-side summary of it
- settings.py  sampling settings from sliders, the API and the URL, validated
- state.py     the shared model registry and each browser session's own state
- presets.py   named settings (Greedy ... Wild)
- explain.py   the short explanations beside each control
- model_panel.py  the model's facts and its training curve
- page.py      the page's HTML templates, mount scripts and static files
- static/      the page's JavaScript (the pipeline, recomputed in the browser) and CSS
"""
