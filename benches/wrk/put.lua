-- PUTs of new blocks for wrk (Debian's `wrk`): every request stores a block nobody stored before.
--
--   wrk -t2 -c32 -d10s --latency -s benches/wrk/put.lua http://127.0.0.1:PORT -- SIZE [PUT_PATH]
--
-- The body is SIZE bytes (17..=524288): SIZE - 16 fixed filler bytes, then 16 bytes that make
-- it unique: a nonce drawn once per thread and run (8 hex digits, so threads, and a second run
-- against the same store, store new blocks too) and the thread's request counter (8 hex
-- digits). PUT_PATH is `/block` for buddy-blocks (default: SPEC's `PUT /block`,
-- the server names the block and answers 201) or a name prefix such as `/p` for a WebDAV peer,
-- which gets a new file per request (`/p<nonce>_<counter>`, 201). wrk counts any status
-- outside 2xx/3xx as "Non-2xx or 3xx responses" (benches/wrk_get.py refuses such a run, so a
-- store that fills up, 507, is refused too). Driven by benches/wrk_get.py (cases put4k, put64k,
-- put512k).
local SUFFIX_BYTES = 16
local SIZE_MAX_BYTES = 524288

local put_path = "/block"
local counter = 0
local nonce = 0
local filler

-- Every wrk thread runs its own Lua state: the address of a fresh table differs between them,
-- and the clock between runs, so together they seed each thread's nonce apart.
local function thread_seed()
  local address = tonumber(tostring({}):match("0x(%x+)"), 16) or 0
  return (os.time() + address) % 2147483647
end

function init(args)
  local size = tonumber(args[1])
  assert(size and size > SUFFIX_BYTES and size <= SIZE_MAX_BYTES,
    "SIZE must be " .. (SUFFIX_BYTES + 1) .. ".." .. SIZE_MAX_BYTES .. " bytes")
  put_path = args[2] or "/block"
  math.randomseed(thread_seed())
  nonce = math.random(0, 0x7fffffff)
  filler = string.rep("x", size - SUFFIX_BYTES)
end

function request()
  counter = counter + 1
  local suffix = string.format("%08x%08x", nonce, counter)
  assert(#suffix == SUFFIX_BYTES)
  local path = put_path
  if put_path ~= "/block" then
    path = string.format("%s%08x_%d", put_path, nonce, counter)
  end
  return wrk.format("PUT", path, nil, filler .. suffix)
end
