-- Argo CD custom health check for modelops.dev/ModelDeployment.
-- Install in argocd-cm (see charts/modelops/README.md):
--   resource.customizations.health.modelops.dev_ModelDeployment: |
--     <this file>
-- Reads only status: the operator never writes spec, so Git and the cluster never drift.
local hs = {}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the ModelDeployment"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status, "Ready")
local degraded = condition(status, "Degraded")
local phase = status.phase

if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = text(ready, "Failed")
elseif phase == "RolledBack" or phase == "Degraded" or (degraded ~= nil and degraded.status == "True") then
  -- The previous revision may still serve, but the desired one (from Git) does not.
  hs.status = "Degraded"
  hs.message = text(degraded, phase)
elseif (phase == "Ready" or phase == "Idle") and ready ~= nil and ready.status == "True" then
  -- Idle: scaled to zero (minReplicas 0); the router holds the next request while a pod starts.
  hs.status = "Healthy"
  hs.message = text(ready, phase)
else
  -- Pending, Building, RollingOut, or Ready not yet confirmed by its condition.
  hs.status = "Progressing"
  hs.message = text(ready, phase)
end
return hs
