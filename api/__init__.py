"""HTTP front end of the XTC service. Never imports torch: see tests/service/test_no_torch.py."""
