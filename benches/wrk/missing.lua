-- POST /blocks/missing of 1,000 hashes for wrk: 500 stored (taken from the preloaded paths),
-- 500 never stored (random), interleaved; the same body on every request.
--
--   wrk -t2 -c32 -d10s --latency -s benches/wrk/missing.lua http://127.0.0.1:PORT -- PATHS_FILE
--
-- PATHS_FILE has one `/block/<hash>` path per line (buddy-blocks only: nginx has no such
-- endpoint). Driven by benches/wrk_get.py --case missing.
local body

local function random_hex64()
  local parts = {}
  for i = 1, 8 do
    parts[i] = string.format("%08x", math.random(0, 0x7fffffff))
  end
  return table.concat(parts)
end

function init(args)
  local stored = {}
  for line in io.lines(args[1]) do
    local hash = line:match("^/block/(%x+)$")
    if hash then
      stored[#stored + 1] = hash
    end
  end
  assert(#stored > 0, "no /block/<hash> paths in " .. tostring(args[1]))
  local lines = {}
  for i = 1, 1000 do
    if i % 2 == 1 then
      lines[i] = stored[math.floor(i / 2) % #stored + 1]
    else
      lines[i] = random_hex64()
    end
  end
  body = table.concat(lines, "\n") .. "\n"
end

function request()
  return wrk.format("POST", "/blocks/missing", nil, body)
end
