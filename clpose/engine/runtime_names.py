"""The runtimes' names and the `--runtime` help, without importing torch (the CLI reads them at start-up);
clpose.engine.runtimes is the code."""

RUNTIMES = ("torch", "onnxruntime", "openvino")
RUNTIME_CHOICES = ("auto", *RUNTIMES)
DEPLOY_EXTRA = "pip install 'clpose[deploy]'"
RUNTIME_HELP = (
    "What runs the network: torch, onnxruntime, openvino, or auto (OpenVINO on the CPU where installed, measured "
    "faster than torch on CPUs with and without AVX-512; else torch). onnxruntime and openvino run the checkpoint's "
    "ONNX graph, exported once into cache/ beside it. Default: $CLPOSE_RUNTIME, else auto."
)
