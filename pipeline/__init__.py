"""rum-pipeline: streaming enrichment of custom RUM actions on Kafka."""

__version__ = "0.1.0"
PROCESSOR_NAME = "rum-pipeline"
