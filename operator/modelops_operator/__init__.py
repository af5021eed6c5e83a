"""modelops operator: ModelDeployment -> build Job -> Triton revisions, analysed and scaled."""

__version__ = "0.1.0"
