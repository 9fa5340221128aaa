-- Reads of preloaded blocks for wrk, the load generator users reach for (Debian's `wrk`):
-- GETs, or the mixed 90/10 load (nine GETs, then a PUT of a new 4 KiB body). No HEAD: wrk's
-- response parser waits for the body a HEAD answer's Content-Length announces (buddy-bench
-- --mix head measures HEAD).
--
--   wrk -t2 -c32 -d10s --latency -s benches/wrk/get.lua http://127.0.0.1:PORT -- PATHS [MODE] [PUT_PATH]
--
-- PATHS has one request path per line (`/block/<hash>` for buddy-blocks, `/<name>` for a WebDAV
-- peer); each wrk thread walks it round robin from its own starting point. MODE is GET
-- (default) or MIXED. In MIXED, PUT_PATH is `/block` for buddy-blocks (the server names
-- the block) or a name prefix such as `/m` for a WebDAV peer (the PUT goes to
-- `/m<thread>_<nonce>_<n>`); each body is unique per thread, run and request, so nothing is a
-- duplicate. wrk counts any status outside 2xx/3xx as "Non-2xx or 3xx responses"
-- (benches/wrk_get.py refuses such a run). Driven by benches/wrk_get.py.
local paths = {}
local next_index = 0
local mode = "GET"
local put_path = "/block"
local counter = 0
local nonce = 0
local filler
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  assert(#paths > 0, "no paths in " .. tostring(args[1]))
  mode = args[2] or "GET"
  assert(mode == "GET" or mode == "MIXED", "MODE is GET or MIXED")
  put_path = args[3] or "/block"
  math.randomseed(os.time() + 7919 * (id or 0))
  nonce = math.random(0, 999999)
  next_index = math.random(#paths)
  filler = string.rep("x", 4096 - 32)
end

function request()
  counter = counter + 1
  if mode == "MIXED" and counter % 10 == 0 then
    local unique = string.format("%08d-%06d-%015d-", id or 0, nonce, counter)
    local path = put_path
    if put_path ~= "/block" then
      path = string.format("%s%d_%d_%d", put_path, id or 0, nonce, counter)
    end
    return wrk.format("PUT", path, nil, unique .. filler)
  end
  next_index = next_index % #paths + 1
  return wrk.format("GET", paths[next_index])
end
