-- wrk script: the request of add_json.lua with binary tensors (Triton's binary extension,
-- as perf_analyzer sends it): a JSON header naming binary_data_size, then 2 x 16 float32
-- little-endian, outputs asked as binary. Env WRK_PATH as in add_json.lua.
local ffi = require("ffi")
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or "/v2/models/add_py/infer"

local header = '{"inputs":['
  .. '{"name":"INPUT0","shape":[1,16],"datatype":"FP32","parameters":{"binary_data_size":64}},'
  .. '{"name":"INPUT1","shape":[1,16],"datatype":"FP32","parameters":{"binary_data_size":64}}'
  .. '],"parameters":{"binary_data_output":true}}'
local a, b = ffi.new("float[16]"), ffi.new("float[16]")
for i = 0, 15 do
  a[i] = i * 0.5
  b[i] = 1.0 + i * 0.25
end
wrk.body = header .. ffi.string(a, 64) .. ffi.string(b, 64)
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = tostring(#header)
