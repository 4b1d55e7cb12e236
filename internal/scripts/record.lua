-- recordItems splits a schedule record (schedule.lua and scheduleretry.lua
-- write it) into its netstrings: tag, value pairs of metadata, then "f"
-- and the fields.
local function recordItems(rec)
  local items, pos = {}, 1
  while pos <= #rec do
    local colon = string.find(rec, ':', pos, true)
    local len = tonumber(string.sub(rec, pos, colon - 1))
    items[#items + 1] = string.sub(rec, colon + 1, colon + len)
    pos = colon + len + 1
  end
  return items
end

-- recordFields returns the entry fields of a schedule record and its
-- metadata, by tag (tags it does not know are kept, for the caller to
-- skip).
local function recordFields(rec)
  local items = recordItems(rec)
  local meta = {}
  for i = 1, #items, 2 do
    if items[i] == 'f' then
      local f = {}
      for j = i + 1, #items do
        f[#f + 1] = items[j]
      end
      return f, meta
    end
    meta[items[i]] = items[i + 1]
  end
  return {}, meta
end
