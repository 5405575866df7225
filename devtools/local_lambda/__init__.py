"""local_lambda: run a `sam build` function under the real Lambda runtime client, without Docker.

``python -m local_lambda invoke --function CollectorFunction --event events/scheduled.json
--env-vars events/env.json`` (see ``runner`` for the layout and ``runtime_api`` for the server).
"""
