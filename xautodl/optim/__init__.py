"""What the search loop and the training loop share to optimise and to measure: optimizers and criteria from a
config (`optimizers`), the per-step LR schedule (`schedules`), device-side accuracy and loss meters (`meters`)."""
