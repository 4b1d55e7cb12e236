-- recordFields returns the entry fields of a schedule record (schedule.lua
-- writes it): netstrings of tag, value pairs, then "f" and the fields.
local function recordFields(rec)
  local items, pos = {}, 1
  while pos <= #rec do
    local colon = string.find(rec, ':', pos, true)
    local len = tonumber(string.sub(rec, pos, colon - 1))
    items[#items + 1] = string.sub(rec, colon + 1, colon + len)
    pos = colon + len + 1
  end
  for i = 1, #items, 2 do
    if items[i] == 'f' then
      local f = {}
      for j = i + 1, #items do
        f[#f + 1] = items[j]
      end
      return f
    end
  end
  return {}
end
