-- Action "rollback-to": asks the operator to serve an earlier revision; spec stays as Git has it.
local os = require("os")
-- The revision to return to: the stable one, or one of status.history (promoted revisions).
local revision = nil
if actionParams ~= nil then
  revision = actionParams["revision"]
end
if revision == nil or revision == "" then
  error("rollback-to needs the parameter revision (Argo CD 3.1 or later)", 0)
end
local known = {}
if obj.status ~= nil then
  if obj.status.stableRevision ~= nil and obj.status.stableRevision ~= "" then
    table.insert(known, obj.status.stableRevision)
  end
  if obj.status.history ~= nil then
    for _, entry in ipairs(obj.status.history) do
      if entry.revision ~= nil and entry.revision ~= obj.status.stableRevision then
        table.insert(known, entry.revision)
      end
    end
  end
end
local found = false
for _, candidate in ipairs(known) do
  if candidate == revision then
    found = true
  end
end
if not found then
  error("unknown revision " .. revision .. "; known: " .. table.concat(known, ", "), 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local annotations = obj.metadata.annotations
-- The nonce the operator handled last (status.lastAction.nonce; handledActionNonce in older statuses).
local handled = nil
if obj.status ~= nil then
  handled = obj.status.handledActionNonce
  if obj.status.lastAction ~= nil then
    handled = obj.status.lastAction.nonce
  end
end
-- A new nonce: UTC time to the second, and a counter that steps past the nonce already on the object and
-- the one the operator handled last (two actions within one second). Argo CD's os has only time and date.
local stamp = os.date("!%Y%m%dT%H%M%SZ")
local counter = 1
local nonce = "argocd-" .. stamp .. "-" .. counter
while nonce == annotations["serving.deepseek.ai/action-nonce"] or nonce == handled do
  counter = counter + 1
  nonce = "argocd-" .. stamp .. "-" .. counter
end
annotations["serving.deepseek.ai/action"] = "rollback-to=" .. revision
annotations["serving.deepseek.ai/action-nonce"] = nonce
return obj
