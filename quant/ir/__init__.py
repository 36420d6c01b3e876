"""The integer IR (torch-free): `IntProgram` and the op specification that the reference, the ONNX export and hwsim derive their tables from."""
