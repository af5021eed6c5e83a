"""The traffic router's agent: it runs beside HAProxy in each router pod (not in the operator)."""
