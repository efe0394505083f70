
https://example.com/image.pnggemini-pro-vision