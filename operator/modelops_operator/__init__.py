"""modelops operator: ModelDeployment -> engine build Job -> Triton revisions, analysed and scaled."""

__version__ = "0.1.0"
