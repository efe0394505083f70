
A beautiful landscaperain€ €(20ÀÄ:sdxl