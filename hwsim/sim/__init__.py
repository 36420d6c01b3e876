"""The simulator: load an integer ONNX model into a plan (`graph`), run it bit for bit with the Numba
kernels (`executor`, `kernels/`), and count each op's actions and memory traffic as `action@width`
(`counting`, `memory`, `actions`) under a memory model (`hwconfig`, `configs/`). Imports no other part
of hwsim."""
