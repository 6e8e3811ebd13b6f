-- X-USER-ID drawn per request: 25% customer 1 (eligible), 50% customers 2..=500 (known, not
-- eligible), 25% 100000..=199999 (unknown). Each wrk thread cycles through 1,000 requests drawn
-- from a fixed seed (Park-Miller generator, exact in doubles), so every run sends the same mix.
local pool = {}
local next_request = 0

function init(args)
  local state = 12345 + 7919 * (thread_id or 1)
  local function rand()
    state = (state * 16807) % 2147483647
    return state
  end
  for i = 1, 1000 do
    local r = rand() % 4
    local user
    if r == 0 then
      user = 1
    elseif r == 3 then
      user = 100000 + rand() % 100000
    else
      user = 2 + rand() % 499
    end
    pool[i] = wrk.format(nil, nil, { ["X-USER-ID"] = tostring(user) })
  end
end

function request()
  next_request = next_request % #pool + 1
  return pool[next_request]
end
