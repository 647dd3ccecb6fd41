-- wrk script for bench/load.sh: POSTs Fusion's example status update
-- (tests/fixtures/seed-status-update.json) to /job-launcher/launcher/status, each
-- request with a new jobId (PREFIX, the wrk thread's number and a counter), the body
-- otherwise byte for byte the fixture.
-- Usage: wrk ... -s bench/post_seed.lua URL -- FIXTURE PREFIX

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local head, tail, headers, id_prefix
local counter = 0

function init(args)
  local path = args[1] or "tests/fixtures/seed-status-update.json"
  local file = assert(io.open(path, "rb"))
  local body = file:read("*a")
  file:close()
  local marker = '"jobId": "hhzitrwancwv"'
  local s, e = body:find(marker, 1, true)
  assert(s, "the fixture's jobId moved")
  head = body:sub(1, s - 1) .. '"jobId": "'
  tail = '"' .. body:sub(e + 1)
  headers = { ["Content-Type"] = "application/json" }
  id_prefix = (args[2] or "w") .. "t" .. tostring(tid) .. "n"
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/job-launcher/launcher/status", headers,
                    head .. id_prefix .. counter .. tail)
end
