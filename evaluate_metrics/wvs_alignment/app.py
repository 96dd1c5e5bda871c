"""Gradio widget of the metric for its Hugging Face Space (`python app.py`; needs gradio 3.x).

Only the widget needs gradio: the metric module itself never imports it.
"""

from pathlib import Path

import evaluate

if __name__ == "__main__":
    from evaluate.utils import launch_gradio_widget

    # the folder of this file holds wvs_alignment.py: load it by path, so the Space needs no Hub lookup
    module = evaluate.load(str(Path(__file__).resolve().parent))
    launch_gradio_widget(module)
