-- The end of every action: sets serving.deepseek.ai/action to `action` and a fresh action-nonce.
-- build-argocd-cm.py puts it after each action's own head; spec stays as Git has it.
local os = require("os")
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
annotations["serving.deepseek.ai/action"] = action
annotations["serving.deepseek.ai/action-nonce"] = nonce
return obj
