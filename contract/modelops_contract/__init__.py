"""The contract between the operator and the builder: what the build Job's argument, its
termination message, a store entry and Triton's config.pbtxt mean.

Light package (pydantic, protobuf through tritonclient's model_config_pb2): both sides import it,
and it imports neither of them. `BUILDER_VERSION` is the version of the build pipeline's output
format; it is part of every engine key, so a change to what a build produces moves every key.
"""

BUILDER_VERSION = "0.3.0"
