-- wrk script: send DEPTH pipelined "GET /" requests in one write on every connection.
-- Usage: wrk -t1 -c100 -d10s --latency -s pipeline.lua http://127.0.0.1:PORT/ -- 16
-- wrk counts every response, so Requests/sec is responses per second.

init = function(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format(nil, "/")
  end
  batch = table.concat(requests)
end

request = function()
  return batch
end
