-- GETs of preloaded blocks for wrk, the load generator users reach for (Debian's `wrk`).
--
--   wrk -t2 -c32 -d10s --latency -s benches/wrk/get.lua http://127.0.0.1:PORT -- PATHS_FILE
--
-- PATHS_FILE has one request path per line (`/block/<hash>` for buddy-blocks, `/<name>` for a
-- WebDAV peer); each wrk thread walks it round robin from its own starting point. wrk counts
-- any status outside 2xx/3xx as "Non-2xx or 3xx responses" (benches/wrk_get.py refuses such a
-- run). Driven by benches/wrk_get.py.
local paths = {}
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  assert(#paths > 0, "no paths in " .. tostring(args[1]))
  next_index = math.random(#paths)
end

function request()
  next_index = next_index % #paths + 1
  return wrk.format("GET", paths[next_index])
end
