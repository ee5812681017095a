"""streamdag."""
