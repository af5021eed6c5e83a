"""PURE: spec -> child manifests (Job, Deployment, Service, ConfigMap) as dicts."""
