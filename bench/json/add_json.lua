-- wrk script: POST a KServe v2 JSON inference request (two FP32 [1,16] inputs as JSON
-- arrays, outputs answered as JSON) to MODEL's /infer (env WRK_MODEL, default add_py;
-- WRK_PATH overrides the whole path, e.g. MLServer's /v2/models/add/infer).
local model = os.getenv("WRK_MODEL") or "add_py"
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or ("/v2/models/" .. model .. "/infer")
wrk.headers["Content-Type"] = "application/json"

local a, b = {}, {}
for i = 0, 15 do
  a[#a + 1] = string.format("%.1f", i * 0.5)
  b[#b + 1] = string.format("%.1f", 1.0 + i * 0.25)
end
wrk.body = '{"inputs":['
  .. '{"name":"INPUT0","shape":[1,16],"datatype":"FP32","data":[' .. table.concat(a, ",") .. ']},'
  .. '{"name":"INPUT1","shape":[1,16],"datatype":"FP32","data":[' .. table.concat(b, ",") .. ']}'
  .. ']}'
