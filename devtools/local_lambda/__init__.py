"""local_lambda: run a `sam build` function under the real Lambda runtime client, without Docker.

``python -m local_lambda invoke --function CollectorFunction --event events/scheduled.json
--env-vars events/env.json --stand-ins demo`` (see ``runner`` for the layout and the env-vars file rules,
``runtime_api`` for the server, ``stand_ins`` for moto, the fake EKS and the CloudFormation ``receiver``);
``python -m local_lambda stand-ins`` runs the stand-ins on the fixed ports of ``events/env.json`` for
`sam local invoke`.
"""
