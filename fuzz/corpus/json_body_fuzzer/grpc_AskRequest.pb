
capital of France?