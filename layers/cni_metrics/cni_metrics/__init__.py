"""cni_metrics: collect Amazon VPC CNI (aws-node) metrics from EKS clusters and publish them to CloudWatch."""

__version__ = "0.1.0"
