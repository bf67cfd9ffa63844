-- Action "rollback-to": asks the operator to serve an earlier revision; spec stays as Git has it.
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
local action = "rollback-to=" .. revision
