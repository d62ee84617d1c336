package adminapi

// Compliance is what the compliance routes need (PROTOCOL §16).
type Compliance interface{}

func (h *Handler) complianceRoutes() {}
