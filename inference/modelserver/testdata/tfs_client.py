#!/usr/bin/python3
"""A TF Serving client built only from stubs generated from proto/ by
grpc_tools: it drives infergate's model server the way any Python TF Serving
client would. Run by interop_test.go:

    tfs_client.py STUBS_DIR GRPC_ADDR REFERENCE_JSON

REFERENCE_JSON holds the demo model's test vectors (onnxrt/testdata/demo.json).
Exits non-zero with a message on the first mismatch; prints a JSON summary.
"""
import json
import struct
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

addr, ref_path = sys.argv[2], sys.argv[3]
with open(ref_path) as f:
    case = json.load(f)["cases"][0]
x = case["inputs"]["input"]
want = case["outputs"]["output"]["data"]


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def float_tensor(shape, values, content):
    t = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]))
    if content:
        t.tensor_content = struct.pack("<%df" % len(values), *values)
    else:
        t.float_val.extend(values)
    return t


channel = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 256 << 20)])
pred = prediction_service_pb2_grpc.PredictionServiceStub(channel)
models = model_service_pb2_grpc.ModelServiceStub(channel)
summary = {}

# Predict, typed fields and tensor_content.
for content in (False, True):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "demo"
    req.inputs["input"].CopyFrom(float_tensor(x["shape"], x["data"], content))
    resp = pred.Predict(req, timeout=10)
    if resp.model_spec.name != "demo" or resp.model_spec.version.value != 1:
        fail("model_spec %s" % resp.model_spec)
    out = resp.outputs["output"]
    got = list(out.float_val)
    if [d.size for d in out.tensor_shape.dim] != [x["shape"][0], 1]:
        fail("output shape %s" % out.tensor_shape)
    if len(got) != len(want) or any(abs(a - b) > 1e-5 for a, b in zip(got, want)):
        fail("predictions %s != %s" % (got, want))
    summary["predict_content" if content else "predict_typed"] = got[:3]

# Predict by version label.
req = predict_pb2.PredictRequest()
req.model_spec.name = "add"
req.model_spec.version_label = "canary"
req.inputs["x"].CopyFrom(float_tensor([1, 4], [0, 1, 2, 3], False))
resp = pred.Predict(req, timeout=10)
if resp.model_spec.version.value != 2 or list(resp.outputs["y"].float_val) != [2, 3, 4, 5]:
    fail("label canary: %s" % resp)
summary["label_version"] = resp.model_spec.version.value

# GetModelMetadata: the SignatureDefMap inside the Any.
mreq = get_model_metadata_pb2.GetModelMetadataRequest()
mreq.model_spec.name = "demo"
mreq.metadata_field.append("signature_def")
mresp = pred.GetModelMetadata(mreq, timeout=10)
sdm = get_model_metadata_pb2.SignatureDefMap()
if not mresp.metadata["signature_def"].Unpack(sdm):
    fail("metadata does not hold a SignatureDefMap: %s" % mresp.metadata["signature_def"].type_url)
sig = sdm.signature_def["serving_default"]
inp = sig.inputs["input"]
if sig.method_name != "tensorflow/serving/predict" or inp.dtype != types_pb2.DT_FLOAT or \
        [d.size for d in inp.tensor_shape.dim] != [-1, 16]:
    fail("signature %s" % sig)
summary["signature_inputs"] = sorted(sig.inputs.keys())

# GetModelStatus.
sreq = get_model_status_pb2.GetModelStatusRequest()
sreq.model_spec.name = "add"
sresp = models.GetModelStatus(sreq, timeout=10)
states = [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state)) for s in sresp.model_version_status]
if states != [(2, "AVAILABLE"), (1, "AVAILABLE")]:
    fail("status %s" % states)
summary["status"] = states

# Errors keep TF's codes and messages.
req = predict_pb2.PredictRequest()
req.model_spec.name = "nope"
req.inputs["input"].CopyFrom(float_tensor([1, 16], [0.0] * 16, False))
try:
    pred.Predict(req, timeout=10)
    fail("unknown model answered")
except grpc.RpcError as e:
    if e.code() != grpc.StatusCode.NOT_FOUND or "Servable not found for request: Latest(nope)" not in e.details():
        fail("unknown model: %s %s" % (e.code(), e.details()))
    summary["unknown_model"] = e.code().name

# HandleReloadConfigRequest: move the "stable" label to version 2.
rreq = model_management_pb2.ReloadConfigRequest()
cfg = rreq.config.model_config_list.config
demo_cfg = cfg.add()
demo_cfg.name = "demo"
demo_cfg.base_path = sys.argv[4]
demo_cfg.model_platform = "tensorflow"
add_cfg = cfg.add()
add_cfg.name = "add"
add_cfg.base_path = sys.argv[5]
add_cfg.model_version_policy.all.SetInParent()
add_cfg.version_labels["stable"] = 2
rresp = models.HandleReloadConfigRequest(rreq, timeout=30)
if rresp.status.error_code != 0:
    fail("reload: %s" % rresp.status)
req = predict_pb2.PredictRequest()
req.model_spec.name = "add"
req.model_spec.version_label = "stable"
req.inputs["x"].CopyFrom(float_tensor([1, 4], [0, 0, 0, 0], True))
if pred.Predict(req, timeout=10).model_spec.version.value != 2:
    fail("stable after reload")
summary["reloaded"] = True

print(json.dumps(summary))
