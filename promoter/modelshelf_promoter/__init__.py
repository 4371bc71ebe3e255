"""modelshelf promoter."""
