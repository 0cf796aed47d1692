"""The playground's user interface: pure Python that app.py wires to Gradio, and the page.

- actions.py   every action a visitor can take, for the page and the API alike; the limits
- handlers.py  the page's events: an action's data in, one payload out (views.py builds it)
- api.py       the scripting API's endpoints, over the same actions
- inside.py    scoring a text and the logit lens, for the page and the API
- state.py     the shared model registry and each browser tab's own state
- sessions.py  the server's table of live sessions: a memory budget, closed tabs freed
- server.py    the command line and the launch
- chart.py     the data the page's chart is drawn from, and the server's summary of it
- tokens.py    token labels with visible whitespace, the prompt's chips, the text's tokens
- presets.py, explain.py, model_panel.py   named settings, the guide, the model panel
- page.py      the page's HTML skeletons, mount scripts and static files
- static/      the page: pipeline.js walks model/sampling.py's table (llama_stages.js adds the
               newer stages); app.js, controls.js, chain.js (the sampler chain's editor),
               chart.js, text.js, score.js, lens.js, playground.css
"""
