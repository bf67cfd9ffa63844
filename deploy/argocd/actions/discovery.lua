-- Argo CD actions of a DeepSeekDeployment. Each sets the serving.deepseek.ai/action annotation and a new
-- serving.deepseek.ai/action-nonce (the operator acts once per nonce); what is enabled follows the status.
local actions = {}
local status = obj.status
if status == nil then
  status = {}
end
local phase = status.phase
local rolling = (phase == "Progressing" or phase == "Paused") and status.canaryRevision ~= nil
  and status.canaryRevision ~= ""
local held = status.heldRevision ~= nil and status.heldRevision ~= ""

-- rollback-to: to the stable revision while a canary runs, or to an earlier promoted revision.
local earlier = false
if status.history ~= nil then
  for _, entry in ipairs(status.history) do
    if entry.revision ~= nil and entry.revision ~= status.stableRevision then
      earlier = true
    end
  end
end
local can_roll_back = earlier or (rolling and status.stableRevision ~= nil and status.stableRevision ~= "")

actions["promote"] = {["disabled"] = not rolling, ["displayName"] = "Promote (skip the current step)",
                      ["iconClass"] = "fa fa-fw fa-forward"}
actions["promote-full"] = {["disabled"] = not rolling, ["displayName"] = "Promote fully (no more steps)",
                           ["iconClass"] = "fa fa-fw fa-fast-forward"}
actions["abort"] = {["disabled"] = not rolling, ["displayName"] = "Abort (back to stable)",
                    ["iconClass"] = "fa fa-fw fa-times-circle"}
actions["pause"] = {["disabled"] = not rolling or phase == "Paused", ["displayName"] = "Pause",
                    ["iconClass"] = "fa fa-fw fa-pause-circle"}
actions["resume"] = {["disabled"] = not rolling or phase ~= "Paused", ["displayName"] = "Resume",
                     ["iconClass"] = "fa fa-fw fa-play-circle"}
actions["retry"] = {["disabled"] = not held and phase ~= "RolledBack",
                    ["displayName"] = "Retry (roll the held revision out again)", ["iconClass"] = "fa fa-fw fa-redo"}
-- The revision comes as an action parameter (Argo CD 3.1 and later).
actions["rollback-to"] = {["disabled"] = not can_roll_back, ["displayName"] = "Roll back to a revision",
                          ["iconClass"] = "fa fa-fw fa-undo", ["params"] = {{["name"] = "revision"}}}
return actions
