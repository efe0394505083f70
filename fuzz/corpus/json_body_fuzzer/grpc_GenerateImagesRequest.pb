
A futuristic cityscapedall-e-3"hd2	1024x1024