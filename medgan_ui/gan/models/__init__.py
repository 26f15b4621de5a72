"""Model families implementing medgan_ui.gan.base.GANModel (losses, schedules, EMA, sampling)."""
