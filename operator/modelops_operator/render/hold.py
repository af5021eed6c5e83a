"""PURE: the router's hold, a small Lua action HAProxy runs while no revision can take a request.

HAProxy answers 503 at once when a backend has no usable server: its queue (`timeout queue`)
only holds requests for servers that are full, and a retry needs a server to retry on. With
scale to zero the serving revision has no pod for a few seconds, so the frontends run this
action when `nbsrv(<backend>)` is 0 (the check is HAProxy's own, no Lua runs otherwise):

- it sleeps in steps of STEP_MS until the backend has a usable server, then HAProxy forwards
  the request as usual (HTTP requests and each gRPC call, an HTTP/2 stream, alike);
- it tells the router agent at once, and every second while it waits, so the operator wakes
  the revision (`POST /demand?event=held` on the agent's port, on loopback);
- after the hold time it answers itself: 503 with a text body (HTTP), or HTTP 200 with
  `grpc-status: 14` (UNAVAILABLE) and a `grpc-message` (gRPC), saying the model is waking up;
- the response of a held request reports how long it was held (`event=served`).

The agent sets the hold time and its port through the admin socket (`modelops hold <ms>
<port>`); until it does, the hold time is 0 and nothing changes: 503 at once, as before.
"""

from __future__ import annotations

STEP_MS = 20
POKE_EVERY_MS = 1000
WAKING_MESSAGE = "the model is waking up (scaled to zero); retry in a few seconds"

HOLD_LUA = f"""-- modelops router: hold requests while no revision can take them (scale to zero).
local hold_ms, agent_port, last_poke = 0, 0, 0

local function now_ms()
  local t = core.now()
  return t.sec * 1000 + t.usec // 1000
end

local function poke(event, ms)
  if agent_port == 0 then return end
  local s = core.tcp()
  s:settimeout(1)
  if s:connect("127.0.0.1", agent_port) then
    s:send(string.format(
      "POST /demand?event=%s&ms=%d HTTP/1.0\\r\\nContent-Length: 0\\r\\n\\r\\n", event, ms))
    s:receive("*l")
  end
  s:close()
end

core.register_cli({{"modelops", "hold"}}, "modelops hold <ms> <agent port> : hold requests",
  function(applet, _, _, ms, port)
    hold_ms = math.tointeger(tonumber(ms) or 0) or 0
    agent_port = math.tointeger(tonumber(port) or 0) or 0
    applet:send(string.format("hold %d port %d\\n", hold_ms, agent_port))
  end)

local function refuse(txn, backend, held)
  poke("timedOut", held)
  local reply = txn:reply()
  local message = "{WAKING_MESSAGE}"
  if backend == "grpc" then
    reply:set_status(200)
    reply:add_header("content-type", "application/grpc")
    reply:add_header("grpc-status", "14")
    reply:add_header("grpc-message", message)
  else
    reply:set_status(503, "Service Unavailable")
    reply:add_header("content-type", "text/plain")
    reply:add_header("retry-after", "5")
    reply:set_body(message .. "\\n")
  end
  txn:done(reply)
end

core.register_action("hold", {{"http-req"}}, function(txn, backend)
  if hold_ms <= 0 then return end
  local start = now_ms()
  while txn.f:nbsrv(backend) == 0 do
    local now = now_ms()
    if now - start >= hold_ms then
      refuse(txn, backend, now - start)
      return
    end
    if now - last_poke >= {POKE_EVERY_MS} then
      last_poke = now
      poke("held", now - start)
    end
    core.msleep({STEP_MS})
  end
  txn:set_var("txn.modelops_held", start)
end, 1)

core.register_action("held", {{"http-res"}}, function(txn)
  local start = tonumber(txn:get_var("txn.modelops_held"))
  if start then poke("served", now_ms() - start) end
end, 0)
"""
