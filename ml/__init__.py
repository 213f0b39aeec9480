"""Pure ML core of defectloop: data, SuperSimpleNet, training, inference, metrics, artifacts.

Nothing here reads the environment, touches a database or serves the web.
"""
