-- Argo CD health of a DeepSeekDeployment (serving.deepseek.ai/v1alpha1), from the status the operator writes.
-- Runs in Argo CD's Lua sandbox: base, table and a safe os only (no string or math library).
local hs = {}

local function find_condition(status, condition_type)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

-- "Reason: message" of the first of the named conditions that says something, else the fallback.
local function explain(status, condition_types, fallback)
  for _, condition_type in ipairs(condition_types) do
    local condition = find_condition(status, condition_type)
    if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
      if condition.reason ~= nil and condition.reason ~= "" then
        return condition.reason .. ": " .. condition.message
      end
      return condition.message
    end
  end
  return fallback
end

local function canary(status)
  local text = "canary"
  if status.canaryRevision ~= nil and status.canaryRevision ~= "" then
    text = text .. " " .. status.canaryRevision
  end
  if status.canaryWeight ~= nil then
    text = text .. " at " .. status.canaryWeight .. "% of traffic"
  end
  if status.currentStep ~= nil then
    text = text .. " (step " .. status.currentStep .. ")"
  end
  return text
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local phase = status.phase
if phase == nil or phase == "Pending" then
  hs.status = "Progressing"
  hs.message = explain(status, {"Progressing", "Ready"}, "Pending")
elseif phase == "Preparing" then
  hs.status = "Progressing"
  hs.message = explain(status, {"CheckpointReady", "Progressing"}, "Preparing the checkpoint")
elseif phase == "Progressing" then
  hs.status = "Progressing"
  local fallback = "Rolling out"
  if status.canaryRevision ~= nil and status.canaryRevision ~= "" then
    fallback = "Rolling out " .. canary(status)
  end
  hs.message = explain(status, {"Progressing", "Ready"}, fallback)
elseif phase == "Paused" then
  -- A canary waits for a person (an indefinite pause step, a `pause` action, an inconclusive analysis).
  hs.status = "Suspended"
  hs.message = explain(status, {"Progressing"}, "Paused: " .. canary(status) .. "; resume, promote or abort")
elseif phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = explain(status, {"Ready"}, "Ready")
elseif phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = explain(status, {"Degraded", "FitsHardware", "CheckpointReady", "Preflight", "Ready"}, "Degraded")
elseif phase == "RolledBack" then
  -- The revision Git asks for was rolled back and is held; the stable revision serves. After a failed
  -- analysis or an abort the operator sets Degraded=True; after a `rollback-to` action it does not, and the
  -- resource waits for a spec change or `retry`.
  local target = "the stable revision"
  if status.stableRevision ~= nil and status.stableRevision ~= "" then
    target = "revision " .. status.stableRevision
  end
  local degraded = find_condition(status, "Degraded")
  if degraded ~= nil and degraded.status == "False" then
    local held = "the revision Git names"
    if status.heldRevision ~= nil and status.heldRevision ~= "" then
      held = "revision " .. status.heldRevision
    end
    hs.status = "Suspended"
    hs.message = "Rolled back to " .. target .. " on request; " .. held .. " waits for a spec change or retry"
  else
    hs.status = "Degraded"
    hs.message = "Rolled back to " .. target .. ": " .. explain(status, {"Degraded"}, "rollout failed")
  end
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. phase
end
return hs
