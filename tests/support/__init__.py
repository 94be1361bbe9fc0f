"""Test support: fixtures, fakes, fault injectors and servers shared by the test modules (tests never import each
other)."""
