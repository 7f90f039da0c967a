"""PyBullet manipulation tasks, scripted offline datasets and checkpoint evaluation. Extra: `robot`."""
