"""The networks, one file each: the AFF U-Net of SIRST-5K (aff_unet.py) and the field's CNN peers
(acm, alcnet, dna_net, istdu_net, uiu_net), with the blocks the peers share in layers.py and
those only Dai et al.'s ACM and ALCNet share in dai.py.
trainer/registry.py names them.

Each peer's paper fixes its blocks; channel widths, depths and the attention bottlenecks follow
the authors' released configurations (as BasicIRSTD runs them), which the parameter counts
confirm. Initialisation: PyTorch's defaults.
"""
