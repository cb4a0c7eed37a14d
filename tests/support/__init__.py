"""What the tests stand on: the fake model servers, the odd clips, SeaweedFS, an isolated
worker stack."""
