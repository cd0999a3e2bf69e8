"""``python -m model.predict``: the prediction CLI under the name the PACS tools and our checks
call. The CLI itself is ``pipeline/predict.py`` (it wires model/ and pacs/); this module only
runs it, by name, so model/ imports nothing above it. Same flags, same JSON lines, same exit
codes.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("pipeline.predict", run_name="__main__", alter_sys=True)
