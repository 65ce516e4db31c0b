"""Three-phase unbalanced distribution power flow (implicit Zbus) and sensitivities."""
