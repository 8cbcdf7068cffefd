//! The appliance itself: the files baked into the image and the first-boot agent.
