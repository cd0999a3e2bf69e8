"""The model server: the one Predictor behind Ray Serve (``python -m serving``), and the HTTP
client the app uses instead of loading the model itself when $CXR_MODEL_URL is set.

Only ``serving.deployment`` and ``serving.__main__`` import Ray or TensorFlow; the client and
the wire format stay light so the app as a client never loads them.
"""
