-- wrk script: authenticated `next` polls (protocol v2), rotating over the device tokens in $TOKENS.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
local body = '{"device_provides":{"artifact_name":"initial","device_type":"bench-device"},"update_control_map":true}'
request = function()
  i = i % #tokens + 1
  return wrk.format("POST", "/api/devices/v2/deployments/device/deployments/next",
    { ["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json" }, body)
end
